"""Request bodies: JSON only, and never larger than DATA_UPLOAD_MAX_MEMORY_SIZE."""

import io

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.parsers import JSONParser


class RequestBodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class LimitedJSONParser(JSONParser):
    """JSONParser that refuses (413) a body over the limit before parsing it, whether the client
    declared its length or streamed it chunked."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None:
            request = (parser_context or {}).get("request")
            declared = request.META.get("CONTENT_LENGTH") if request is not None else None
            too_large = RequestBodyTooLarge(
                f"The request body is over the limit of {limit} bytes; "
                "split the request into smaller ones."
            )
            if declared and declared.isdigit() and int(declared) > limit:
                raise too_large
            data = stream.read(limit + 1) if stream is not None else b""
            if len(data) > limit:
                raise too_large
            stream = io.BytesIO(data)
        return super().parse(stream, media_type, parser_context)
