"""``python -m argosy`` runs the same CLI as the ``argosy`` script."""

from argosy.cli import main

main()
