"""Stateful emulators of the Infor ION API Gateway (M3, SyteLine) and the Anaplan APIs.

They carry every test, the demo and the benchmarks, so they follow the references in
``shared/reference`` (token expiry, 429s, asynchronous tasks, the model lock, failure dumps).
The clients never import this package.
"""
