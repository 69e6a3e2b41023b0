from sanad.cli import app

app()
