"""`make bench`: our proxy + PDP beside nginx auth_request and Envoy ext_authz."""
