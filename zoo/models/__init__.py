"""Every model family; importing this package registers them all with :mod:`zoo.registry`."""
# ruff: noqa: I001 - one line per family, appended as families land

from zoo.models import lenet  # noqa: F401
from zoo.models import recurrent  # noqa: F401
from zoo.models import googlenet  # noqa: F401
from zoo.models import inception_v2  # noqa: F401
from zoo.models import inception_v3  # noqa: F401
from zoo.models import inception_v4  # noqa: F401
from zoo.models import inception_resnet_v2  # noqa: F401
from zoo.models import resnet  # noqa: F401
from zoo.models import densenet  # noqa: F401
from zoo.models import alexnet  # noqa: F401
from zoo.models import zfnet  # noqa: F401
from zoo.models import nin  # noqa: F401
from zoo.models import vgg  # noqa: F401
from zoo.models import mobilenet  # noqa: F401
from zoo.models import mlp  # noqa: F401
from zoo.models import transformer  # noqa: F401
from zoo.models import vit  # noqa: F401
from zoo.models import swin  # noqa: F401
from zoo.models import shufflenet  # noqa: F401
