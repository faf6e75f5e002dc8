def load_galaxy10(*args, **kwargs):
    raise NotImplementedError  # being written
