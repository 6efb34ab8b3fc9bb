"""HTTP service: ``create_app(model_path, engine)`` -> FastAPI app; ``clearface serve`` runs it with uvicorn."""
