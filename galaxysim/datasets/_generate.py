def make_galaxies(*args, **kwargs):
    raise NotImplementedError  # being written
