"""(family module: layers are added here)"""
