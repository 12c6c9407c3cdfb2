package benchdata

// BrowserContext returns a typical browser context as analytics.js sends
// it: about 1 KB of JSON in nine maps (ip, userAgent, library, page,
// campaign, screen, traits, consent). Each call returns new maps.
func BrowserContext() map[string]any {
	return map[string]any{
		"ip":        "203.0.113.42",
		"locale":    "fr-FR",
		"timezone":  "Europe/Paris",
		"userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
		"library":   map[string]any{"name": "analytics.js", "version": "next-1.70.0"},
		"page": map[string]any{
			"path": "/products/tents/ultralight-2p", "referrer": "https://www.example-search.com/search?q=ultralight+tent+2+person",
			"search": "?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale", "title": "Ultralight 2P Tent | Example Outdoor",
			"url": "https://shop.example.com/products/tents/ultralight-2p?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale",
		},
		"campaign": map[string]any{"name": "spring_sale", "source": "newsletter", "medium": "email", "term": "tents", "content": "hero-banner"},
		"screen":   map[string]any{"width": 1512.0, "height": 982.0, "density": 2.0},
		"traits":   map[string]any{"plan": "pro", "segment": "outdoor-enthusiast"},
		"consent": map[string]any{"categoryPreferences": map[string]any{
			"Advertising": false, "Analytics": true, "Functional": true, "DataSharing": false,
		}},
	}
}
