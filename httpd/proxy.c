/* Reverse proxy: placeholder until the upstream side lands. */
#include "conn.h"

#include <string.h>

const struct http_proxy_route *http_proxy_route_for(const struct http_request *req)
{
	for (int i = 0; i < http_cfg.nroutes; i++) {
		const struct http_proxy_route *r = &http_cfg.routes[i];
		if (req->path.n >= r->prefix_len && !memcmp(req->path.p, r->prefix, r->prefix_len))
			return r;
	}
	return NULL;
}

int http_proxy_start(struct http_worker *w, struct http_conn *c, struct http_request *req,
                     const struct http_proxy_route *rt, size_t head_len)
{
	(void)w, (void)rt;
	c->close_after = true;
	(void)req;
	c->rlen = head_len > c->rlen ? 0 : c->rlen;
	return 502;
}

void http_proxy_event(struct http_worker *w, struct http_conn *c)
{
	(void)w, (void)c;
}

void http_proxy_free(struct http_conn *c)
{
	(void)c;
}
