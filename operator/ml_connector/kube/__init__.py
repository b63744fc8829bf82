"""ml_connector.kube"""
