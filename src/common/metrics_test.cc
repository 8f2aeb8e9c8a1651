// Unit tests for the metrics registry's exposition text (Prometheus text
// format 0.0.4): labels and their escaping, histograms, callbacks.
#include "common/metrics.h"

#include <gtest/gtest.h>

namespace tern::metrics {
namespace {

TEST(Metrics, CounterWithEscapedLabels) {
  Family f("t_total", "Help with \\ and\nnewline", Type::kCounter, {"a", "b"});
  f.With({"x", "say \"hi\"\\\n"}).Inc(2);
  f.With({"x", "say \"hi\"\\\n"}).Inc();
  std::string out;
  f.Write(out);
  EXPECT_EQ(out,
            "# HELP t_total Help with \\\\ and\\nnewline\n"
            "# TYPE t_total counter\n"
            "t_total{a=\"x\",b=\"say \\\"hi\\\"\\\\\\n\"} 3\n");
}

TEST(Metrics, GaugeAndCallback) {
  Family g("t_gauge", "g", Type::kGauge, {});
  g.With().Add(5);
  g.With().Add(-2);
  std::string out;
  g.Write(out);
  EXPECT_NE(out.find("\nt_gauge 3\n"), std::string::npos);
  g.SetCallback([] { return 1.5; });
  out.clear();
  g.Write(out);
  EXPECT_NE(out.find("\nt_gauge 1.5\n"), std::string::npos);
}

TEST(Metrics, HistogramIsCumulative) {
  Family h("t_seconds", "h", Type::kHistogram, {"k"}, {0.1, 1});
  Series& s = h.With({"v"});
  s.Observe(0.05);
  s.Observe(0.5);
  s.Observe(7);
  std::string out;
  h.Write(out);
  EXPECT_NE(out.find("t_seconds_bucket{k=\"v\",le=\"0.1\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("t_seconds_bucket{k=\"v\",le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(out.find("t_seconds_bucket{k=\"v\",le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(out.find("t_seconds_sum{k=\"v\"} 7.55\n"), std::string::npos);
  EXPECT_NE(out.find("t_seconds_count{k=\"v\"} 3\n"), std::string::npos);
}

TEST(Metrics, CatalogListsEveryFamily) {
  std::string text = Text();
  for (const Family* f : Get().all()) {
    EXPECT_NE(text.find("# TYPE " + f->name() + " "), std::string::npos) << f->name();
  }
}

}  // namespace
}  // namespace tern::metrics
