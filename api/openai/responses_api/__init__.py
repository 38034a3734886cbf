"""OpenAI's Responses API (`/v1/responses`): requests, response objects, stream events, the store."""
