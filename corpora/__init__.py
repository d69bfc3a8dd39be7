"""audioret.corpora"""
