"""floating-ip-reaper: (being written)"""
