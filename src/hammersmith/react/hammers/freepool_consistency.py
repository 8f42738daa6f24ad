"""freepool-consistency: (being written)"""
