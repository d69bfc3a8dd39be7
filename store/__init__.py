"""audioret.store"""
