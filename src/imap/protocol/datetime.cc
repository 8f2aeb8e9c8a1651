// IMAP date and date-time (datetime.h). Calendar arithmetic is proleptic
// Gregorian over days since 1970-01-01, so no time zone database is read.
#include "imap/protocol/datetime.h"

#include <cstdio>

namespace tern::imap {
namespace {

constexpr const char* kMonths[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

bool IsLeap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int y, int m) {
  static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30,
                                    31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

// Days from 1970-01-01 to y-m-d: count whole years of a calendar that
// starts in March, so the leap day is the last day of its year.
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;                                // [0, 399]
  int64_t mp = (m + 9) % 12;                                  // March = 0
  int64_t doy = (153 * mp + 2) / 5 + d - 1;                   // [0, 365]
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;        // [0, 146096]
  return era * 146097 + doe - 719468;
}

void CivilFromDays(int64_t z, int* y, int* m, int* d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  *m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  *y = static_cast<int>(yoe + era * 400 + (*m <= 2));
}

bool Digits(std::string_view s, int* out) {
  if (s.empty()) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

int MonthIndex(std::string_view s) {
  if (s.size() != 3) return 0;
  for (int i = 0; i < 12; ++i) {
    bool same = true;
    for (int k = 0; k < 3; ++k) {
      if ((s[k] | 0x20) != (kMonths[i][k] | 0x20)) same = false;
    }
    if (same) return i + 1;
  }
  return 0;
}

// "dd-Mon-yyyy" once the day is known.
Result<Date> MonthYear(int day, std::string_view rest) {
  // rest: "-Mon-yyyy"
  if (rest.size() != 9 || rest[0] != '-' || rest[4] != '-') {
    return Err("Invalid date");
  }
  Date d;
  d.day = day;
  d.month = MonthIndex(rest.substr(1, 3));
  if (d.month == 0) return Err("Invalid month in date");
  if (!Digits(rest.substr(5, 4), &d.year)) return Err("Invalid year in date");
  if (d.day < 1 || d.day > DaysInMonth(d.year, d.month)) {
    return Err("Invalid day in date");
  }
  return d;
}

}  // namespace

Result<Date> ParseDate(std::string_view text) {
  size_t dash = text.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash > 2) {
    return Err("Invalid date");
  }
  int day = 0;
  if (!Digits(text.substr(0, dash), &day)) return Err("Invalid day in date");
  return MonthYear(day, text.substr(dash));
}

std::string FormatDate(const Date& date) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d-%s-%04d", date.day,
                kMonths[(date.month - 1) % 12], date.year);
  return buf;
}

Result<DateTime> ParseDateTime(std::string_view text) {
  // "dd-Mon-yyyy hh:mm:ss +zzzz": 26 octets.
  if (text.size() != 26) return Err("Invalid date-time");
  int day = 0;
  if (text[0] == ' ') {
    if (!Digits(text.substr(1, 1), &day)) return Err("Invalid day in date-time");
  } else if (!Digits(text.substr(0, 2), &day)) {
    return Err("Invalid day in date-time");
  }
  auto date = MonthYear(day, text.substr(2, 9));
  if (!date) return tl::unexpected(date.error());
  DateTime dt;
  dt.date = *date;
  if (text[11] != ' ' || text[14] != ':' || text[17] != ':' ||
      text[20] != ' ') {
    return Err("Invalid date-time");
  }
  if (!Digits(text.substr(12, 2), &dt.hour) || dt.hour > 23 ||
      !Digits(text.substr(15, 2), &dt.minute) || dt.minute > 59 ||
      !Digits(text.substr(18, 2), &dt.second) || dt.second > 60) {
    return Err("Invalid time in date-time");
  }
  char sign = text[21];
  int hh = 0, mm = 0;
  if ((sign != '+' && sign != '-') || !Digits(text.substr(22, 2), &hh) ||
      !Digits(text.substr(24, 2), &mm) || mm > 59) {
    return Err("Invalid zone in date-time");
  }
  dt.zone_minutes = (sign == '-' ? -1 : 1) * (hh * 60 + mm);
  return dt;
}

std::string FormatDateTime(const DateTime& dt) {
  int zone = dt.zone_minutes < 0 ? -dt.zone_minutes : dt.zone_minutes;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%02d-%s-%04d %02d:%02d:%02d %c%02d%02d",
                dt.date.day, kMonths[(dt.date.month - 1) % 12], dt.date.year,
                dt.hour, dt.minute, dt.second, dt.zone_minutes < 0 ? '-' : '+',
                zone / 60, zone % 60);
  return buf;
}

int64_t ToUnixSeconds(const DateTime& dt) {
  int64_t days = DaysFromCivil(dt.date.year, dt.date.month, dt.date.day);
  return days * 86400 + dt.hour * 3600 + dt.minute * 60 + dt.second -
         static_cast<int64_t>(dt.zone_minutes) * 60;
}

DateTime FromUnixSeconds(int64_t seconds, int zone_minutes) {
  int64_t local = seconds + static_cast<int64_t>(zone_minutes) * 60;
  int64_t days = local >= 0 ? local / 86400 : (local - 86399) / 86400;
  int64_t rest = local - days * 86400;
  DateTime dt;
  CivilFromDays(days, &dt.date.year, &dt.date.month, &dt.date.day);
  dt.hour = static_cast<int>(rest / 3600);
  dt.minute = static_cast<int>(rest / 60 % 60);
  dt.second = static_cast<int>(rest % 60);
  dt.zone_minutes = zone_minutes;
  return dt;
}

std::string FormatInternalDate(int64_t seconds, int zone_minutes) {
  return FormatDateTime(FromUnixSeconds(seconds, zone_minutes));
}

}  // namespace tern::imap
