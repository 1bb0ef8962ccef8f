"""edge/backends"""
