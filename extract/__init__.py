"""audioret.extract"""
