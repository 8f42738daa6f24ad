"""unutilized-lease-reaper: (being written)"""
