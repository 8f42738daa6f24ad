"""conflicting-macs: (being written)"""
