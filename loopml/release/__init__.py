"""Stage 4, releases: what each step of the CI/CD pipeline runs (``.github/workflows/``).

:mod:`.checks` vets a version, :mod:`.records` keeps the release records, :mod:`.smoke` calls a deployed
API, :mod:`.aws` holds every CloudFormation/Lambda/CodeDeploy call (the logic takes the clients as
arguments), and :mod:`.steps` is one function per pipeline step."""
