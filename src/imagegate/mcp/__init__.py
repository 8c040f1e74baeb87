"""The MCP face of the gateway: the tool ``image`` over stdio and streamable HTTP."""
