"""audioret.finetune"""
