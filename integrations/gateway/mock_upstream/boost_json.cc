// Boost.JSON's compiled part, built into this program because Debian's
// libboost1.81-dev ships Boost.JSON as headers only.
#include <boost/json/src.hpp>
