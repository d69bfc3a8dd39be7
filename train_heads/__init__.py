"""audioret.train_heads"""
