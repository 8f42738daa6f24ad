"""undead-instances: (being written)"""
