"""ml_connector.anaplan"""
