"""orphans: (being written)"""
