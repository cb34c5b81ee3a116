"""One error tree for the service; the edges (API, worker, CLI) map it to their own terms.

    QAServiceError
    ├── ConfigError          a setting, model folder or rules file is wrong: stop at start-up
    │   └── RulesError       a rubric or policy pack does not validate (names file and field)
    ├── InputError           the caller sent something we cannot use (maps to 4xx / failed call)
    │   ├── AudioError       undecodable, empty or unsupported audio
    │   │   └── NoSpeech     audio that decodes but holds no speech to score (silence, noise)
    │   └── TranscriptError  a text transcript we cannot parse
    ├── NotFound             no such call, scorecard, rubric or key (404)
    ├── Conflict             the request clashes with what is stored (409)
    ├── AuthError            no or bad credentials (401)
    │   └── Forbidden        credentials fine, role not allowed (403)
    └── TransientError       worth retrying later (storage, network, database)
"""


class QAServiceError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigError(QAServiceError):
    """A setting, model or rules file is wrong; the process cannot start."""


class RulesError(ConfigError):
    """A rubric or policy pack failed validation."""


class InputError(QAServiceError):
    """Input from a caller that cannot be processed."""


class AudioError(InputError):
    """Audio that is empty, corrupt or in a format we cannot decode."""


class NoSpeech(AudioError):
    """Audio that decodes but holds no speech: a call to fail with the reason, never to score."""


class TranscriptError(InputError):
    """A text transcript that cannot be parsed into turns."""


class NotFound(QAServiceError):
    """The requested thing does not exist."""


class Conflict(QAServiceError):
    """The request conflicts with stored state."""


class AuthError(QAServiceError):
    """Missing or invalid credentials."""


class Forbidden(AuthError):
    """Valid credentials without the role the action needs."""


class TransientError(QAServiceError):
    """A failure that may pass on retry."""
