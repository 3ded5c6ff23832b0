"""hub.yaml and the environment -> typed Settings: load, types, yaml line tracking, one
module per section. The only package that reads os.environ."""
