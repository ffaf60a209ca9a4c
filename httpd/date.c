/* HTTP dates (RFC 9110 5.6.7): formatted as IMF-fixdate, parsed in all three forms. */
#include "http.h"

#include <stdio.h>
#include <string.h>

static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void http_format_date(time_t t, char *out)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	/* 29 characters while the year has four digits (strftime's %a/%b follow the locale) */
	char buf[64];
	snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
	         tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	         tm.tm_sec);
	memcpy(out, buf, 29);
	out[29] = '\0';
}

static int month_of(const char *m)
{
	for (int i = 0; i < 12; i++)
		if (!memcmp(m, months[i], 3))
			return i;
	return -1;
}

time_t http_parse_date(struct http_slice s)
{
	char buf[64], mon[4] = {0};
	int d, y, hh, mm, ss, n = 0;
	if (s.n == 0 || s.n >= sizeof(buf))
		return -1;
	memcpy(buf, s.p, s.n);
	buf[s.n] = '\0';
	const char *comma = strchr(buf, ',');
	if (comma && comma - buf == 3) { /* Sun, 06 Nov 1994 08:49:37 GMT */
		if (sscanf(buf + 4, " %2d %3s %4d %2d:%2d:%2d GMT%n", &d, mon, &y, &hh, &mm, &ss,
		           &n) != 6)
			return -1;
		n += 4;
	} else if (comma) { /* Sunday, 06-Nov-94 08:49:37 GMT */
		if (sscanf(comma + 1, " %2d-%3[A-Za-z]-%2d %2d:%2d:%2d GMT%n", &d, mon, &y, &hh,
		           &mm, &ss, &n) != 6)
			return -1;
		y += y < 70 ? 2000 : 1900;
		n += (int)(comma + 1 - buf);
	} else { /* Sun Nov  6 08:49:37 1994 */
		if (sscanf(buf, "%*3s %3s %2d %2d:%2d:%2d %4d%n", mon, &d, &hh, &mm, &ss, &y, &n) !=
		    6)
			return -1;
	}
	int m = month_of(mon);
	if ((size_t)n != s.n || m < 0 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60)
		return -1;
	struct tm tm = {.tm_year = y - 1900,
	                .tm_mon = m,
	                .tm_mday = d,
	                .tm_hour = hh,
	                .tm_min = mm,
	                .tm_sec = ss};
	return timegm(&tm);
}
