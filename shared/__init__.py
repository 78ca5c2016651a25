"""Calendly trigger bridge: the code the Azure Functions share.

Nothing here imports ``azure.functions``: the same service code runs under the
Functions host, the local host (``python -m shared serve``) and the tests.
"""
