"""ml_connector.audit"""
