"""retirement-enforcer: (being written)"""
