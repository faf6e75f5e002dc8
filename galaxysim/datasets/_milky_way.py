def load_milky_way(*args, **kwargs):
    raise NotImplementedError  # being written
