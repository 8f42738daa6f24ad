"""orphan-resource-providers: (being written)"""
