"""audioret.encoders"""
