"""Development tools, never deployed (.funcignore): the local Functions host, the Calendly
sandbox with its sample events, a console target, and the WSGI server they run on.
``python -m shared serve|sandbox|simulate`` hands over to ``devtools.cli``."""
