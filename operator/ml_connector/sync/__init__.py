"""ml_connector.sync"""
