from klubpost import create_app

app = create_app()
