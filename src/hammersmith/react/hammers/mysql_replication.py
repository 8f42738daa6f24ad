"""mysql-replication: (being written)"""
