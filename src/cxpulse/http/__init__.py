"""HTTP adapter pieces shared by the services: the error format and request-parameter parsing."""
