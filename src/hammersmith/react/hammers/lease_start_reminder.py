"""lease-start-reminder: (being written)"""
