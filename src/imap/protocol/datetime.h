// IMAP dates: the date-time of INTERNALDATE and APPEND ("17-Jul-1996
// 02:44:25 -0700", RFC 9051 9 date-time) and the date of SEARCH keys
// ("1-Feb-1994", date-text), parsed, formatted and turned into Unix time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace tern::imap {

struct Date {
  int year = 1970;  // 4 digits
  int month = 1;    // 1..12
  int day = 1;      // 1..days in the month
  bool operator==(const Date&) const = default;
};

struct DateTime {
  Date date;
  int hour = 0;
  int minute = 0;
  int second = 0;         // 0..60 (a leap second reads as the next minute)
  int zone_minutes = 0;   // east of UTC: +0130 is 90
  bool operator==(const DateTime&) const = default;
};

// date-text: day of one or two digits, English month abbreviation in any
// case, four-digit year. A day past the end of its month is refused.
Result<Date> ParseDate(std::string_view text);
// "1-Feb-1994": the form SEARCH takes.
std::string FormatDate(const Date& date);

// The inside of a date-time (without its quotes): the day is two digits or
// a space and one digit (date-day-fixed); the zone is +HHMM or -HHMM.
Result<DateTime> ParseDateTime(std::string_view text);
// "01-Feb-1994 21:05:09 +0100", without quotes (two-digit day).
std::string FormatDateTime(const DateTime& dt);

// Seconds since the epoch of the instant `dt` names.
int64_t ToUnixSeconds(const DateTime& dt);
// The instant in the zone given, for INTERNALDATE output.
DateTime FromUnixSeconds(int64_t seconds, int zone_minutes);
std::string FormatInternalDate(int64_t seconds, int zone_minutes);

}  // namespace tern::imap
