"""edge/assets"""
