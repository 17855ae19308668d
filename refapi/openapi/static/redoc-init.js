// ReDoc on this service's own document, in system fonts: the page loads no web fonts.
Redoc.init(
  "/openapi.json",
  {
    theme: {
      typography: {
        fontFamily: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
        headings: { fontFamily: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif" },
        code: { fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace" },
      },
    },
  },
  document.getElementById("redoc"),
);
