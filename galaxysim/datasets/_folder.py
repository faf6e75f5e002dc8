def load_image_folder(*args, **kwargs):
    raise NotImplementedError  # being written
