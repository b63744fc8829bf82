"""ml_connector.infor"""
