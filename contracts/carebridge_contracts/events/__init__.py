"""Event payload models, one module per producing context.

Each module lists its events in `__all__`; they are re-exported here and by
`carebridge_contracts`, and the registry finds them by their `topic`.
"""

from carebridge_contracts.events import booking, care, intake, notification, outcomes, referral
from carebridge_contracts.events.base import BaseEvent
from carebridge_contracts.events.booking import *  # noqa: F403
from carebridge_contracts.events.care import *  # noqa: F403
from carebridge_contracts.events.intake import *  # noqa: F403
from carebridge_contracts.events.notification import *  # noqa: F403
from carebridge_contracts.events.outcomes import *  # noqa: F403
from carebridge_contracts.events.referral import *  # noqa: F403

__all__ = ["BaseEvent"]
__all__ += booking.__all__
__all__ += care.__all__
__all__ += intake.__all__
__all__ += notification.__all__
__all__ += outcomes.__all__
__all__ += referral.__all__
