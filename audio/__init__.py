"""audioret.audio"""
