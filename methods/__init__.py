"""Built-in method plugins, each written only against zoobench's public plugin API."""
