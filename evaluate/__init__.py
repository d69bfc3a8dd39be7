"""audioret.evaluate"""
