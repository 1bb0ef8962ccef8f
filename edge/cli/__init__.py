"""edge/cli"""
